"""RetailSim agents: PPO policies (Stable-Baselines3), heuristic baselines, training and reports.

Not built yet: the policies arrive with their issue. This package will import ``retailsim_env``.
"""
