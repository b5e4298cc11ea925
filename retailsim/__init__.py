"""The ``retailsim`` command line (``retailsim --help``); the libraries live in ``world_model``,
``retailsim_env`` and ``agents``."""

__version__ = "0.1.0"
