"""Pure document processing: models, stages and the pipeline that orders them.

Nothing here reads the environment, talks to Celery, watches files or knows about the index.
"""
