"""``python -m era_llm_app ...`` is ``era-llm-train ...``."""

from era_llm_app.cli import main

raise SystemExit(main())
