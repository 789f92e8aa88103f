# Sourced by test.sh and bench.sh: keep DDS traffic on this machine, in a domain of our own,
# with ROS logs in a temporary folder removed on exit.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}"
ROS_LOG_DIR="$(mktemp -d)"
export ROS_LOG_DIR
trap 'rm -rf "$ROS_LOG_DIR"' EXIT
