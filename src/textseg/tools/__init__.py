"""What the workstation runs to make and measure models: import, quantize, fp16, op profiles,
benchmarks. Needs `onnx`; the vehicle imports `textseg.engine`, never this package."""
