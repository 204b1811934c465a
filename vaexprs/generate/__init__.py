"""The light side: generation requests, the one generation loop, onnxruntime, writers, the served pyfunc.
No torch, scikit-learn or matplotlib is imported here (a test checks it)."""
