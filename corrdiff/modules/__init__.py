"""Built-in components; importing a submodule registers its components by name.

One file per kind: transforms (encoders and end-to-end decoders), priors,
conditioning, score_net, schedules, samplers.
"""
