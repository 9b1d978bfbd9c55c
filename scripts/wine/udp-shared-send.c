/* Wine minimal case (see scripts/windows-test.sh): two threads serve UDP echo on ONE
   nonblocking socket, each waiting in select() and then calling recvfrom until WSAEWOULDBLOCK
   and sendto for each datagram (what `--threads 2` of the readiness models does on Windows,
   where no balancing SO_REUSEPORT exists: each loop holds a handle to the same socket). 100
   client sockets send one datagram each and wait up to 2 s for its echo. With one serving
   thread every echo comes back; with two, under Wine 8, the server receives all 100 but some
   sendto calls fail with WSAEWOULDBLOCK (10035) while the other thread is sending, with almost
   nothing queued ("lost 11 of 100 ... echoed 89, last send error 10035"; 4-17 lost per run,
   sometimes none). The models count such an echo as a send drop, as they must for a full send
   buffer, so the conformance case `t2-handoff/udp_100_sockets` is listed as known under Wine.
   Blocking sends (the `blocking` model) and overlapped WSASendTo (`iocp`) are not affected.
   Not verified against a real Windows.
   Build: x86_64-w64-mingw32-gcc -O2 -o udp-shared-send.exe udp-shared-send.c -lws2_32
   Run:   wine64 udp-shared-send.exe THREADS   (1 or 2) */
#include <winsock2.h>
#include <stdio.h>
#include <stdlib.h>
static SOCKET srv; static volatile LONG stop; static volatile LONG got, echoed, emsgsize, senderr;
static DWORD WINAPI serve(LPVOID p) {
    char b[2048]; (void)p;
    while (!stop) {
        fd_set r; FD_ZERO(&r); FD_SET(srv, &r); struct timeval tv = {0, 50000};
        if (select(0, &r, NULL, NULL, &tv) <= 0) continue;
        for (;;) {
            struct sockaddr_in from; int fl = sizeof from;
            int n = recvfrom(srv, b, sizeof b, 0, (struct sockaddr*)&from, &fl);
            if (n < 0) { if (WSAGetLastError() == WSAEMSGSIZE) InterlockedIncrement(&emsgsize); break; }
            InterlockedIncrement(&got);
            if (sendto(srv, b, n, 0, (struct sockaddr*)&from, fl) == n) InterlockedIncrement(&echoed);
            else InterlockedExchange(&senderr, WSAGetLastError());
        }
    }
    return 0;
}
int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    WSADATA w; WSAStartup(MAKEWORD(2,2), &w);
    srv = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_addr.s_addr = htonl(0x7f000001);
    bind(srv, (struct sockaddr*)&a, sizeof a); int al = sizeof a; getsockname(srv, (struct sockaddr*)&a, &al);
    u_long nb = 1; ioctlsocket(srv, FIONBIO, &nb);
    HANDLE t[2]; for (int i = 0; i < threads; i++) t[i] = CreateThread(NULL, 0, serve, NULL, 0, NULL);
    SOCKET c[100]; DWORD ms = 2000;
    for (int i = 0; i < 100; i++) {
        c[i] = socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
        setsockopt(c[i], SOL_SOCKET, SO_RCVTIMEO, (char*)&ms, sizeof ms);
        connect(c[i], (struct sockaddr*)&a, sizeof a);
    }
    for (int i = 0; i < 100; i++) { char m[32]; int n = sprintf(m, "socket %d", i); send(c[i], m, n, 0); }
    int lost = 0, wrong = 0;
    for (int i = 0; i < 100; i++) {
        char b[64], m[32]; int want = sprintf(m, "socket %d", i);
        int n = recv(c[i], b, sizeof b, 0);
        if (n < 0) { lost++; printf("socket %d: no echo (error %d)\n", i, WSAGetLastError()); }
        else if (n != want || memcmp(b, m, n)) wrong++;
    }
    stop = 1; WaitForMultipleObjects(threads, t, TRUE, 2000);
    printf("%d serving thread(s): lost %d of 100, wrong %d; server received %ld, echoed %ld, "
           "WSAEMSGSIZE %ld, last send error %ld\n", threads, lost, wrong, got, echoed, emsgsize, senderr);
    return lost || wrong;
}
