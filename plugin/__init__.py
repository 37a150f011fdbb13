"""Desktop shell of the plugin: registration of the Processing provider."""
