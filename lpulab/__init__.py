"""lpulab: a research workbook that checks the claims made about Groq's LPU against NVIDIA GPUs."""

__version__ = "0.1.0"
