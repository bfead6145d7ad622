"""`gateway demo` and the tests' embedded services: PostgreSQL (pgserver) and MQTT (amqtt or
the project's Mosquitto), the `demo` extra. Production never imports this package."""
