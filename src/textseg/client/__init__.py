"""The client side of the node, for tests, benchmarks, the demo and bag replay: a frame client
over DDS, a lifecycle client, and starting and stopping node processes."""
