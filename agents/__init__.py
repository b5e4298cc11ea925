"""RetailSim agents: PPO (Stable-Baselines3), baseline policies, multi-agent PPO and evaluation reports.

- ``agents.policies``: historical pricing, cost-plus, random, myopic greedy, (s, S) inventory;
- ``agents.train``: ``retailsim agents train`` (PPO on the batched RetailSim-v0, TensorBoard, checkpoints);
- ``agents.multi``: ``retailsim agents train-multi`` (the PettingZoo market's agents) and its evaluation;
- ``agents.evaluate`` and ``agents.plots``: ``retailsim agents evaluate`` (learned and oracle markets);
- ``agents.envargs``: the trainers' ``env_kwargs``, checked before a run directory is written.

This package imports ``retailsim_env``; nothing below it imports this package.
"""
