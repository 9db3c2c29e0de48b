"""The model repository: its versions on disk (TF Serving's layout) and the contract every side keeps."""
