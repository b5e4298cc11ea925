"""RetailSim environments: the weekly market step and its Gymnasium and PettingZoo shells.

Not built yet: ``RetailSim-v0`` and the multi-agent environments arrive with their issue. This package
will import only ``world_model``'s inference API, never the reverse.
"""
