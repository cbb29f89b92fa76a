<?php
// A PHP backend publishing to sockhub's Pusher HTTP API without any library: it signs the
// request with hash_hmac exactly as Pusher's docs describe, then POSTs it with PHP's streams.
//
//   php pusher_publish.php http://127.0.0.1:8080 APP_ID KEY SECRET CHANNEL EVENT DATA
//
// Prints the HTTP status line and the response body.

[$_, $base, $appId, $key, $secret, $channel, $event, $data] = $argv;

$body = json_encode(['name' => $event, 'channels' => [$channel], 'data' => $data]);
$path = "/apps/$appId/events";
$params = [
    'auth_key' => $key,
    'auth_timestamp' => (string)time(),
    'auth_version' => '1.0',
    'body_md5' => md5($body),
];
ksort($params);
$query = implode('&', array_map(fn($k, $v) => "$k=$v", array_keys($params), $params));
$params['auth_signature'] = hash_hmac('sha256', "POST\n$path\n$query", $secret);

$context = stream_context_create(['http' => [
    'method' => 'POST',
    'header' => "Content-Type: application/json\r\n",
    'content' => $body,
    'timeout' => 5,
    'ignore_errors' => true,
]]);
$answer = file_get_contents("$base$path?" . http_build_query($params), false, $context);
echo $http_response_header[0], "\n", $answer, "\n";
