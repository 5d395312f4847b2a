"""The built-in scenario catalogue: one module per subject, each scenario registered by its
@scenario decorator when harness.scenario.load_catalogue() imports the module (README, "Scenarios")."""
