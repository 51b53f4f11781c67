"""The networks, one file per model: its Flax module, its input transform (a `*Logits` class),
its converter from the weight files people have, its loader and its registry entries
(`REGISTRY`, collected by `jaxfool.classifiers.registry`). `torchvision` is the classifier and
loader the torch-layout networks share; `conv` holds CPU forms of slow convolutions; `tiny` is a
small test network."""
