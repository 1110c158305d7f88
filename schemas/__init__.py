"""JSON Schemas of Verifily's files; shipped inside the package as ``verifily_action.schemas``."""
