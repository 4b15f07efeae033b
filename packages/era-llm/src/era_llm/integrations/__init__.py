"""Framework integrations: `era_llm.integrations.trl` (extra `trl`) and `era_llm.integrations.verl`
(extra `verl`). Import the submodule you need; neither is imported here."""
