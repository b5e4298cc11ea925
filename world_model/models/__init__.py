"""The shopper models: the Mamba sequence encoder (``mamba``: the ``mamba_ssm`` CUDA kernel when it imports and
the tensors are on CUDA, a pure-PyTorch parallel selective scan otherwise, one parameter layout for both)."""
