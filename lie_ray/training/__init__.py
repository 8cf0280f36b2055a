"""Training the scenarios: Ray Data pipelines, a Ray Train worker loop, a Tune trial each."""
