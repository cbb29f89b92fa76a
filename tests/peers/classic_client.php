<?php
/*
 * The classic PHP TCP client, as a test peer for sockhub.
 *
 *     php classic_client.php [HOST [PORT]]        (defaults: 127.0.0.1 1935)
 *
 * socket_create -> socket_connect -> socket_write("Ho\r\nfirst blood\r\n") -> socket_read until
 * the server closes -> socket_close. Everything received goes to stdout exactly as it arrived;
 * what the client itself has to say goes to stderr, so stdout can be compared byte for byte.
 *
 * Unlike the original it cannot hang: SO_RCVTIMEO / SO_SNDTIMEO bound every read and write
 * (10 s, or env CLASSIC_CLIENT_TIMEOUT seconds).
 *
 * Exit status: 0 the server closed (end of file); 1 bad arguments; 2 cannot create or connect;
 * 3 a read or write timed out; 4 any other socket error (a reset, for instance);
 * 5 the sockets extension is missing.
 */

error_reporting(E_ALL);
ini_set('display_errors', 'stderr');

function say($text)
{
    fwrite(STDERR, "classic_client: $text\n");
}

if (!extension_loaded('sockets')) {
    say('the PHP sockets extension is not loaded (Debian/Ubuntu: apt-get install php-cli, '
        . 'whose php-common provides it; elsewhere enable extension=sockets in php.ini)');
    exit(5);
}

$ip = $argc > 1 ? $argv[1] : '127.0.0.1';
$port = $argc > 2 ? $argv[2] : '1935';
if (!ctype_digit((string) $port) || (int) $port < 1 || (int) $port > 65535) {
    say("bad port '$port'");
    exit(1);
}
$port = (int) $port;
$timeout = (int) (getenv('CLASSIC_CLIENT_TIMEOUT') ?: 10);

$socket = socket_create(AF_INET, SOCK_STREAM, SOL_TCP);
if ($socket === false) {
    say('socket_create() failed: ' . socket_strerror(socket_last_error()));
    exit(2);
}
$bound = array('sec' => $timeout, 'usec' => 0);
socket_set_option($socket, SOL_SOCKET, SO_RCVTIMEO, $bound);
socket_set_option($socket, SOL_SOCKET, SO_SNDTIMEO, $bound);

say("connecting to $ip port $port...");
if (!@socket_connect($socket, $ip, $port)) {
    say('socket_connect() failed: ' . socket_strerror(socket_last_error($socket)));
    socket_close($socket);
    exit(2);
}
say('connected');

/* What a timed-out read or write leaves in socket_last_error(). */
function timed_out($errno)
{
    return $errno === SOCKET_EAGAIN || (defined('SOCKET_EWOULDBLOCK') && $errno === SOCKET_EWOULDBLOCK);
}

$in = "Ho\r\n";
$in .= "first blood\r\n";
$sent = 0;
while ($sent < strlen($in)) {
    $n = @socket_write($socket, substr($in, $sent));
    if ($n === false) {
        $errno = socket_last_error($socket);
        say('socket_write() failed: ' . socket_strerror($errno));
        socket_close($socket);
        exit(timed_out($errno) ? 3 : 4);
    }
    $sent += $n;
}
say("sent $sent bytes");

/* The classic loop: print whatever arrives until socket_read() returns "" (end of file). */
$status = 0;
while (true) {
    $out = @socket_read($socket, 8192);
    if ($out === false) {
        $errno = socket_last_error($socket);
        if (timed_out($errno)) {
            say("nothing received for {$timeout} s, giving up");
            $status = 3;
        } else {
            say('socket_read() failed: ' . socket_strerror($errno));
            $status = 4;
        }
        break;
    }
    if ($out === '') {
        say('the server closed the connection');
        break;
    }
    echo $out;
}

socket_close($socket);
exit($status);
