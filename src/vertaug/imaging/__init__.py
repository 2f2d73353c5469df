"""Simulated X-ray imaging: digitally reconstructed radiographs (drr) and fluoroscopy frames of a procedure (fluoro)."""
