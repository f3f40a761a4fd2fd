"""Architecture search: search spaces, the architecture artifact, and the stages that chain search -> re-train
(DESIGN §5; docs/architecture.md, "Search contract")."""
