"""The API contracts: DashScope validation, the OpenAI mapping, the OpenAPI additions."""
