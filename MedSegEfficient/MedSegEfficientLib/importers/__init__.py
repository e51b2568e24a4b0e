"""Importers that turn other projects' released weights into MedSegEfficient model files."""
