"""Browser tests: a real JupyterLab with the nbtrack panel, in headless chromium."""
