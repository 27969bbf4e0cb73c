"""The operator commands behind `ecs-metadata-janitor check | cleanup | replay` (never on the
function's path: nothing here is imported by handler.app or the runtime)."""
