"""Test helpers other suites import: fake LLM, webhook and Vault servers, fixtures."""
