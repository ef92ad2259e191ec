"""mobile_api: the mobile app's HTTP surface and the reference device client."""
