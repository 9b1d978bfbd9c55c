/* Wine minimal case (see scripts/windows-test.sh): a thread blocked in recv on a connected
   socket; another thread calls shutdown(SD_BOTH) on the same socket. On Linux the same
   sequence wakes the recv (it returns 0); under Wine 8 it prints "still blocked 3 s after
   shutdown". The `blocking` model stops its client threads this way, so its stop case is
   listed under Wine as known. Not verified here against a real Windows.
   Build: x86_64-w64-mingw32-gcc -O2 -o shutdown-wake.exe shutdown-wake.c -lws2_32
   Run:   wine64 shutdown-wake.exe PORT   (PORT: a local listener that accepts and never writes,
          e.g. python3 -c 'import socket,time;l=socket.create_server(("127.0.0.1",PORT));l.accept();time.sleep(9)') */
#include <winsock2.h>
#include <stdio.h>
#include <stdlib.h>
static SOCKET s; static volatile LONG done;
static DWORD WINAPI reader(LPVOID p) { char b[16]; int n = recv(s, b, sizeof b, 0);
    printf("recv returned %d (error %d)\n", n, n < 0 ? WSAGetLastError() : 0); done = 1; return 0; }
int main(int argc, char **argv) {
    WSADATA w; WSAStartup(MAKEWORD(2,2), &w);
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(atoi(argv[1]));
    a.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(s, (struct sockaddr*)&a, sizeof a)) { printf("connect %d\n", WSAGetLastError()); return 1; }
    CreateThread(NULL, 0, reader, NULL, 0, NULL);
    Sleep(300);
    printf("shutdown(SD_BOTH) -> %d\n", shutdown(s, SD_BOTH));
    for (int i = 0; i < 30 && !done; i++) Sleep(100);
    if (!done) printf("still blocked 3 s after shutdown\n");
    return 0;
}
