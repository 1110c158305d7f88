"""Data attribution: which train rows and tag segments helped or hurt each eval slice (`verifily attribute`)."""
