"""RetailSim's world model: LGSR data ingest, the data-to-training pipeline, the shopper models and the
synthetic market with known truth (``world_model.data``)."""
