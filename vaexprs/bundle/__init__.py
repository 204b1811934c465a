"""The bundle, the contract between training and generation: bundle.json's schema, the likelihood heads'
facts and numpy sampling, the latent sampler. numpy only."""
