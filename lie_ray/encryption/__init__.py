"""The encrypt job: CIFAR-10 encrypted into Parquet shards by a Ray Data actor pool."""
