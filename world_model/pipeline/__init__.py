"""``retailsim pipeline run``: ingested transactions -> processed/, features/ and prepared/ artifacts.

Stages run in dependency order (``stages.ALL_STAGES``); each is skipped when its manifest shows the same
inputs and parameters, so a killed run resumes where it stopped. See docs/pipeline.md.
"""
