"""Reference implementations that jaxfool's networks are checked against (test-only).

`torch_nets` needs torch, an optional test extra (`pip install jaxfool[torch]`): import it only
where torch is installed. Nothing in the library imports this package.
"""
