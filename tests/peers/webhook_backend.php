<?php
// A backend as the classic audience writes it: plain PHP behind `php -S` (or Apache/nginx),
// receiving sockhub's webhooks and pushing back through sockhub's HTTP API.
//
//   WEBHOOK_SECRET=s SOCKHUB_API=http://127.0.0.1:8080 SOCKHUB_API_KEY=k BANNED_USER=mallory \
//     php -S 127.0.0.1:9000 tests/peers/webhook_backend.php
//
// connect: refuses BANNED_USER (HTTP 403 + {"reject": "..."}), accepts everyone else.
// message: publishes "backend saw <user>: <data>" to the channel `lobby` through POST /api/publish.
// close:   logs it.
// Every request's X-Sockhub-Signature is checked first; a bad one gets 401.
// Each event is logged to stderr as `EVENT <event> <user> <session>` for the test to follow.

$secret = getenv('WEBHOOK_SECRET');
$body = file_get_contents('php://input');
$signature = $_SERVER['HTTP_X_SOCKHUB_SIGNATURE'] ?? '';
$expected = 'sha256=' . hash_hmac('sha256', $body, $secret);
if (!hash_equals($expected, $signature)) {
    error_log('BAD SIGNATURE ' . $signature);
    http_response_code(401);
    echo "bad signature\n";
    return true;
}

$event = json_decode($body, true);
$user = $event['user'] ?? '-';
error_log("EVENT {$event['event']} $user {$event['session']}");
header('Content-Type: application/json');

switch ($event['event']) {
    case 'connect':
        if ($user === getenv('BANNED_USER')) {
            http_response_code(403);
            echo json_encode(['reject' => "$user is banned"]);
            return true;
        }
        echo '{}';
        return true;

    case 'message':
        $publish = json_encode([
            'channel' => 'lobby',
            'data' => "backend saw $user: {$event['data']}",
        ]);
        $context = stream_context_create(['http' => [
            'method' => 'POST',
            'header' => "Content-Type: application/json\r\n"
                . 'Authorization: Bearer ' . getenv('SOCKHUB_API_KEY') . "\r\n",
            'content' => $publish,
            'timeout' => 5,
            'ignore_errors' => true,
        ]]);
        $answer = file_get_contents(getenv('SOCKHUB_API') . '/api/publish', false, $context);
        error_log('PUBLISHED ' . trim((string)$answer));
        echo '{}';
        return true;

    default:
        echo '{}';
        return true;
}
