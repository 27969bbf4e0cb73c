"""ecs-metadata-janitor: delete ECS metadata keys named by queues, webhooks and schedules."""

__version__ = "0.1.0"
