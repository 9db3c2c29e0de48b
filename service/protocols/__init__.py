"""The wire protocols, one module each, every one a thin adapter over the same core (service/core.py):

- native.py: POST /predict, the friendliest form (JSON pixels, base64 files, uploads, raw image bodies);
- tfserving.py: TensorFlow Serving's REST API (/v1);
- open_inference.py: the Open Inference Protocol (KServe V2) itself, shared by its two transports:
  v2_rest.py (/v2, with Triton's binary tensor extension) and v2_grpc.py (inference.GRPCInferenceService).

An adapter parses its requests, names a model version, and hands pixels or image files to the core; it never
decodes images, pads batches or runs the model itself.
"""
