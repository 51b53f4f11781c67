"""Readers of weight file formats, never of a network: Caffe's protobuf files, torch `.pth`,
`.safetensors`, the torch layout rules, and the cache of converted weights. Each network's own
converter (in `jaxfool.classifiers.nets`) builds on them."""
