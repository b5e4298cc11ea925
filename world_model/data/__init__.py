"""LGSR data: layouts and canonical schema (``schema``), ingest with quarantine (``ingest``), the
ingested dataset's loader (``dataset``), calibration facts (``facts``) and the synthetic market
(``synthetic``)."""
