"""The torch side: the network, the training loop, fit_vae/gen_exprs, the latent mixture, ONNX export."""
