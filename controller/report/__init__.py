"""The incident report: one self-contained HTML file from what the tools found."""
