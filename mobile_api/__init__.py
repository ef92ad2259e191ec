"""mobile_api: the server side of the mobile channel (device binding,
signing requests approved on the phone, notifications), per
ARCHITECTURE.md. The reference device client, which used to live here, is
`device_client`."""
