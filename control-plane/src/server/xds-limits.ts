// Message sizes on the xDS port, shared by the ADS server and the Envoy bootstrap so both ends agree.
//
// A state-of-the-world response carries every resource of its type: a 10,000-service CDS response is about
// 7.5 MiB. gRPC clients refuse messages above 4 MiB unless configured otherwise, and proxyless gRPC xDS clients
// (grpc-js-xds and friends) cannot be configured from their bootstrap. So: Envoy's bootstrap raises its limit
// to ENVOY_XDS_MAX_RECEIVE_BYTES (envoy_grpc.max_receive_message_length); the server never sends a client a
// message above that client's limit (it refuses the push, logs it and counts it instead of letting the
// client kill the stream and reconnect in a loop); and delta xDS splits a big update into several responses
// that each fit, which is why big meshes should run Envoy with ads_config api_type DELTA_GRPC.

/** What a gRPC client accepts by default (and all a proxyless gRPC xDS client will ever accept). */
export const GRPC_DEFAULT_MAX_RECEIVE_BYTES = 4 * 1024 * 1024;

/** What the generated Envoy bootstrap lets Envoy receive on its ADS stream. */
export const ENVOY_XDS_MAX_RECEIVE_BYTES = 64 * 1024 * 1024;

/** Largest message the ADS server sends at all (grpc.max_send_message_length). */
export const XDS_MAX_SEND_BYTES = ENVOY_XDS_MAX_RECEIVE_BYTES;

/**
 * Largest request the ADS server reads. A DiscoveryRequest is a node, a list of names (bounded separately)
 * and an error detail: 4 MiB is far above any honest one.
 */
export const XDS_MAX_RECEIVE_BYTES = 4 * 1024 * 1024;
