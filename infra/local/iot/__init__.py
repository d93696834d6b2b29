"""AWS IoT Core's data plane: the MQTT 3.1.1/5 codec, topic filters, the broker (sessions,
QoS 1, retained messages, shared subscriptions) and the gateway (MQTT over SigV4 WebSocket,
the iot-data HTTPS API)."""
