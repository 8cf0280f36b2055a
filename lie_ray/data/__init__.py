"""CIFAR-10 loading and Ray Dataset plumbing."""
