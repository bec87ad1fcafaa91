"""The gateway's scanning pipeline: policy (content filters), virus, outbreak."""
