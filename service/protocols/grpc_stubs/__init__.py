"""Generated gRPC stubs of KServe's Open Inference Protocol: see generate.sh. Do not edit the *_pb2* files."""
