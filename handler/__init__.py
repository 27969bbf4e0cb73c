"""ecs-metadata-janitor: delete metadata keys from ECS servers, from queues, webhooks and schedules."""

__version__ = "0.1.0"
