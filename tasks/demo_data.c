/* demo_data.c: the bundled default data set (`bertcc demo-data`), a
 * small Korean voice-assistant set for `--task intent-slot` in the ATIS layout
 * (DIR/{train,dev,test}/{seq.in,seq.out,label}), so that the first command of the
 * README trains on something without any download.
 *
 * Sentences come from templates (many phrasings per intent) filled with lists of
 * Korean artists and song titles; words are separated by single spaces as in the ATIS
 * files, and slots are tagged in BIO (B-artist, I-artist, B-title, I-title). Intents:
 * play_song_by_artist, play_song_by_title (a title, sometimes with its artist),
 * stop_music, volume_up, volume_down, next_song. Every combination is made, at most
 * --per-intent of each intent are kept (a seeded shuffle), and each intent is split
 * 80/10/10 into train/dev/test, so the same seed always gives the same files. */
#include "demo_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../runtime/rng.h"
#include "../support/file.h"

static const char *const artists[] = {
    "아이유",        "방탄소년단",    "블랙핑크",      "뉴진스",   "아이브",
    "르세라핌",      "에스파",        "트와이스",      "레드벨벳", "빅뱅",
    "세븐틴",        "엑소",          "샤이니",        "소녀시대", "마마무",
    "태연",          "윤하",          "백예린",        "성시경",   "박효신",
    "김광석",        "이문세",        "이적",          "임영웅",   "장범준",
    "잔나비",        "혁오",          "자우림",        "폴킴",     "이하이",
    "악뮤",          "볼빨간사춘기",  "데이식스",      "에픽하이", "김동률",
    "거미",          "헤이즈",        "청하",          "선미",     "비비",
    "지코",          "크러쉬",        "보아",          "싸이",     "태양",
    "지드래곤",      "다비치",        "케이윌",        "윤종신",   "신승훈",
    "조용필",        "나훈아",        "송가인",        "넬",       "국카스텐",
    "검정치마",      "새소년",        "유재하",        "김건모",   "이소라",
    "적재",          "정승환",        "멜로망스",      "권진아",   "버스커 버스커",
    "다이나믹 듀오", "브라운 아이즈", "언니네 이발관", "노라조",   "십센치",
};
#define NARTISTS ((int)(sizeof artists / sizeof *artists))

typedef struct song {
    const char *title;
    int artist; /* index into artists */
} song;

static const song songs[] = {
    {"좋은 날", 0},
    {"밤편지", 0},
    {"블루밍", 0},
    {"라일락", 0},
    {"너랑 나", 0},
    {"팔레트", 0},
    {"에잇", 0},
    {"봄날", 1},
    {"작은 것들을 위한 시", 1},
    {"뚜두뚜두", 2},
    {"하입 보이", 3},
    {"러브 다이브", 4},
    {"피어리스", 5},
    {"넥스트 레벨", 6},
    {"팬시", 7},
    {"빨간 맛", 8},
    {"거짓말", 9},
    {"아주 나이스", 10},
    {"으르렁", 11},
    {"링딩동", 12},
    {"다시 만난 세계", 13},
    {"별이 빛나는 밤", 14},
    {"사계", 15},
    {"사건의 지평선", 16},
    {"우주를 건너", 17},
    {"거리에서", 18},
    {"야생화", 19},
    {"서른 즈음에", 20},
    {"이등병의 편지", 20},
    {"사랑했지만", 20},
    {"광화문 연가", 21},
    {"걱정말아요 그대", 22},
    {"사랑은 늘 도망가", 23},
    {"벚꽃 엔딩", 64},
    {"여수 밤바다", 64},
    {"주저하는 연인들을 위해", 25},
    {"위잉위잉", 26},
    {"스물다섯 스물하나", 27},
    {"모든 날 모든 순간", 28},
    {"한숨", 29},
    {"오랜 날 오랜 밤", 30},
    {"우주를 줄게", 31},
    {"한 페이지가 될 수 있게", 32},
    {"우산", 33},
    {"취중진담", 34},
    {"기억상실", 35},
    {"비도 오고 그래서", 36},
    {"벌써 12시", 37},
    {"가시나", 38},
    {"밤양갱", 39},
    {"아무노래", 40},
    {"뷰티풀", 41},
    {"넘버 원", 42},
    {"강남 스타일", 43},
    {"눈코입", 44},
    {"무제", 45},
    {"8282", 46},
    {"니가 필요해", 47},
    {"좋니", 48},
    {"보이지 않는 사랑", 49},
    {"바운스", 50},
    {"테스형", 51},
    {"엄마 아리랑", 52},
    {"기억을 걷는 시간", 53},
    {"거울", 54},
    {"에브리띵", 55},
    {"난춘", 56},
    {"그대와 영원히", 57},
    {"잘못된 만남", 58},
    {"바람이 분다", 59},
    {"별 보러 가자", 60},
    {"너였다면", 61},
    {"선물", 62},
    {"위로", 63},
    {"출첵", 65},
    {"벌써 일년", 66},
    {"가장 보통의 존재", 67},
    {"사이다", 68},
    {"스토커", 69},
};
#define NSONGS ((int)(sizeof songs / sizeof *songs))

/* Templates: {A} is an artist, {T} a title, other words as they are. */
static const char *const t_artist[] = {
    "{A} 노래 틀어줘",
    "{A} 노래 아무거나 틀어줘",
    "{A} 노래 아무거나 들려줘",
    "{A} 노래 좀 틀어줘",
    "{A} 노래 재생해줘",
    "{A} 노래 듣고 싶어",
    "{A} 곡 틀어줘",
    "{A} 곡 아무거나 재생해줘",
    "{A} 음악 틀어줘",
    "{A} 노래 들려줄래",
    "{A} 거 아무거나 틀어",
    "{A} 노래 랜덤으로 틀어줘",
    "{A} 노래 전부 틀어줘",
    "{A} 노래 모음 틀어줘",
    "{A} 히트곡 틀어줘",
    "{A} 신곡 틀어줘",
    "아무거나 {A} 노래 틀어줘",
    "{A} 노래 좀 들려줘",
    "{A} 노래 틀어 줄래",
    "지금 {A} 노래 틀어줘",
    "{A} 노래 나오게 해줘",
    "{A} 노래 찾아서 틀어줘",
    "{A} 노래 재생",
    "{A} 노래 플레이해줘",
    "{A} 노래 듣자",
    "{A} 앨범 틀어줘",
    "{A} 노래 연속으로 들려줘",
};
static const char *const t_title[] = {
    "{T} 틀어줘",
    "{T} 들려줘",
    "{T} 재생해줘",
    "{T} 틀어",
    "{T} 듣고 싶어",
    "{T} 좀 틀어줘",
    "{T} 좀 들려줄래",
    "{T} 라는 노래 틀어줘",
    "{T} 라는 곡 재생해줘",
    "{T} 재생",
    "{T} 한번 틀어줘",
    "노래 {T} 틀어줘",
    "곡 {T} 재생해줘",
    "{T} 다시 틀어줘",
    "{T} 플레이해줘",
    "{A} {T} 틀어줘",
    "{A} {T} 들려줘",
    "{A} 노래 중에 {T} 틀어줘",
    "{A} 노래 중에 {T} 들려줘",
    "{A} 노래 {T} 재생해줘",
    "{T} 듣자",
};
static const char *const stop_what[] = {"노래", "음악", "재생", ""};
static const char *const stop_how[] = {"", "그만", "좀 그만", "이제 그만"};
static const char *const stop_verb[] = {"틀어",   "틀어줘", "꺼",       "꺼줘",   "멈춰",
                                        "멈춰줘", "정지",   "중지해줘", "꺼줄래", "끝내줘"};
static const char *const vol_what[] = {"소리", "볼륨", "음량", "노래 소리", "스피커 소리"};
static const char *const vol_how[] = {"", "좀", "더", "조금만", "많이", "조금 더"};
static const char *const vol_up[] = {"키워줘", "올려줘", "크게 해줘", "키워",
                                     "올려",   "높여줘", "크게"};
static const char *const vol_down[] = {"줄여줘", "낮춰줘", "작게 해줘", "줄여",
                                       "낮춰",   "내려줘", "작게"};
static const char *const vol_up_more[] = {"소리가 너무 작아", "잘 안 들려", "안 들려",
                                          "소리 너무 작다", "볼륨 업"};
static const char *const vol_down_more[] = {"소리가 너무 커", "시끄러워", "너무 시끄러워",
                                            "소리 너무 크다", "볼륨 다운"};
static const char *const next_what[] = {"다음 곡", "다음 노래", "다른 노래", "이 노래",
                                        "이 곡",   "다른 곡",   "다음 거"};
static const char *const next_verb[] = {"틀어줘", "넘겨줘", "넘겨봐",   "재생해줘",
                                        "넘겨",   "바꿔줘", "스킵해줘", "들려줘"};
static const char *const next_more[] = {"다음",
                                        "넘겨",
                                        "스킵",
                                        "건너뛰기",
                                        "다음 곡으로",
                                        "이거 말고 다른 노래",
                                        "이 노래 별로야 넘겨줘",
                                        "다른 거 틀어줘",
                                        "이 노래 말고 다른 거",
                                        "다음 트랙"};

/* One sentence being built: words and tags, as single-space-separated strings. */
typedef struct sent {
    char in[512], out[1024];
    const char *intent;
} sent;

typedef struct sents {
    sent *s;
    int n, cap;
} sents;

/* Appends the words of text with tag ("O", or a slot type: B- then I-). */
static void put_words(sent *s, const char *text, const char *slot)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", text);
    int first = 1;
    for (char *w = strtok(buf, " "); w; w = strtok(NULL, " ")) {
        size_t li = strlen(s->in), lo = strlen(s->out);
        snprintf(s->in + li, sizeof s->in - li, "%s%s", li ? " " : "", w);
        if (slot)
            snprintf(s->out + lo, sizeof s->out - lo, "%s%s-%s", lo ? " " : "",
                     first ? "B" : "I", slot);
        else
            snprintf(s->out + lo, sizeof s->out - lo, "%sO", lo ? " " : "");
        first = 0;
    }
}

/* Fills a template. */
static int add(sents *l, const char *tmpl, const char *artist, const char *title,
               const char *intent)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        sent *ns = realloc(l->s, (size_t)cap * sizeof *ns);
        if (!ns)
            return -1;
        l->s = ns;
        l->cap = cap;
    }
    sent *s = &l->s[l->n++];
    s->in[0] = s->out[0] = 0;
    s->intent = intent;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", tmpl);
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w;
         w = strtok_r(NULL, " ", &save)) {
        if (!strcmp(w, "{A}"))
            put_words(s, artist, "artist");
        else if (!strcmp(w, "{T}"))
            put_words(s, title, "title");
        else
            put_words(s, w, NULL);
    }
    return 0;
}

/* "a b" from parts, skipping empty ones. */
static const char *cat(char *buf, size_t len, const char *a, const char *b, const char *c)
{
    snprintf(buf, len, "%s%s%s%s%s", a, *a && (*b || *c) ? " " : "", b, *b && *c ? " " : "",
             c);
    return buf;
}

static void shuffle(sent *s, int n, rt_rng *r)
{
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rt_rng_below(r, (uint64_t)i + 1);
        sent t = s[i];
        s[i] = s[j];
        s[j] = t;
    }
}

static int write_split(const char *dir, const char *name, const sent *s, int n, bc_err *e)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (mkdir(path, 0777) && errno != EEXIST)
        return bc_errf(e, "cannot create %s: %s", path, strerror(errno));
    static const char *const files[] = {"seq.in", "seq.out", "label"};
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, name, files[k]);
        FILE *f = fopen(path, "w");
        if (!f)
            return bc_errf(e, "cannot write %s: %s", path, strerror(errno));
        int ok = 1;
        for (int i = 0; i < n && ok; i++)
            ok = fprintf(f, "%s\n", k == 0 ? s[i].in : k == 1 ? s[i].out : s[i].intent) > 0;
        int err = errno;
        if (fclose(f) || !ok)
            return bc_errf(e, "cannot write %s: %s", path, strerror(ok ? errno : err));
    }
    return 0;
}

enum { ARTIST, TITLE, STOP, UP, DOWN, NEXT, NINTENT };
static const char *const intent_names[NINTENT] = {
    "play_song_by_artist", "play_song_by_title", "stop_music",
    "volume_up",           "volume_down",        "next_song"};

/* Every sentence of every intent; nonzero when out of memory. */
static int generate(sents *by)
{
    int bad = 0;
    char b1[128], b2[128];
    for (size_t t = 0; t < sizeof t_artist / sizeof *t_artist; t++)
        for (int a = 0; a < NARTISTS; a++)
            bad |= add(&by[ARTIST], t_artist[t], artists[a], NULL, intent_names[ARTIST]);
    for (size_t t = 0; t < sizeof t_title / sizeof *t_title; t++)
        for (int s = 0; s < NSONGS; s++)
            bad |= add(&by[TITLE], t_title[t], artists[songs[s].artist], songs[s].title,
                       intent_names[TITLE]);
    for (size_t w = 0; w < sizeof stop_what / sizeof *stop_what; w++)
        for (size_t h = 0; h < sizeof stop_how / sizeof *stop_how; h++)
            for (size_t v = 0; v < sizeof stop_verb / sizeof *stop_verb; v++)
                if (*stop_what[w] || *stop_how[h])
                    bad |= add(&by[STOP],
                               cat(b1, sizeof b1, stop_what[w], stop_how[h], stop_verb[v]),
                               NULL, NULL, intent_names[STOP]);
    for (size_t w = 0; w < sizeof vol_what / sizeof *vol_what; w++)
        for (size_t h = 0; h < sizeof vol_how / sizeof *vol_how; h++)
            for (size_t v = 0; v < sizeof vol_up / sizeof *vol_up; v++) {
                bad |= add(&by[UP], cat(b1, sizeof b1, vol_what[w], vol_how[h], vol_up[v]),
                           NULL, NULL, intent_names[UP]);
                bad |=
                    add(&by[DOWN], cat(b2, sizeof b2, vol_what[w], vol_how[h], vol_down[v]),
                        NULL, NULL, intent_names[DOWN]);
            }
    for (size_t k = 0; k < sizeof vol_up_more / sizeof *vol_up_more; k++) {
        bad |= add(&by[UP], vol_up_more[k], NULL, NULL, intent_names[UP]);
        bad |= add(&by[DOWN], vol_down_more[k], NULL, NULL, intent_names[DOWN]);
    }
    for (size_t w = 0; w < sizeof next_what / sizeof *next_what; w++)
        for (size_t v = 0; v < sizeof next_verb / sizeof *next_verb; v++)
            bad |= add(&by[NEXT], cat(b1, sizeof b1, next_what[w], "", next_verb[v]), NULL,
                       NULL, intent_names[NEXT]);
    for (size_t k = 0; k < sizeof next_more / sizeof *next_more; k++)
        bad |= add(&by[NEXT], next_more[k], NULL, NULL, intent_names[NEXT]);
    return bad;
}

/* Each intent shuffled, cut to per sentences and split 80/10/10 into split[0..3). */
static int split_intents(sents *by, int64_t per, rt_rng *r, sents *split)
{
    for (int i = 0; i < NINTENT; i++) {
        shuffle(by[i].s, by[i].n, r);
        int n = by[i].n < per ? by[i].n : (int)per;
        int ntest = n / 10, ndev = n / 10, ntrain = n - ntest - ndev;
        for (int k = 0; k < n; k++) {
            int which = k < ntrain ? 0 : k < ntrain + ndev ? 1 : 2;
            sent *s = &by[i].s[k];
            if (add(&split[which], "", NULL, NULL, s->intent))
                return -1;
            split[which].s[split[which].n - 1] = *s;
        }
    }
    return 0;
}

int tk_demo_data_write(const char *dir, uint64_t seed, int64_t per_intent,
                       tk_demo_data_counts *counts, bc_err *e)
{
    sents by[NINTENT], split[3];
    memset(by, 0, sizeof by);
    memset(split, 0, sizeof split);
    rt_rng r;
    rt_rng_seed(&r, seed ^ 0x766f696365ULL);
    int rc = -1;
    if (generate(by) || split_intents(by, per_intent, &r, split)) {
        bc_errf(e, "out of memory");
        goto done;
    }
    static const char *const names[3] = {"train", "dev", "test"};
    /* complete or absent: written into DIR.tmp.PID, synced, then published */
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dir, (long)getpid());
    bc_remove_tree(tmp);
    if (mkdir(tmp, 0777)) {
        bc_errf(e, "cannot create %s: %s", tmp, strerror(errno));
        goto done;
    }
    for (int k = 0; k < 3; k++) {
        shuffle(split[k].s, split[k].n, &r);
        if (write_split(tmp, names[k], split[k].s, split[k].n, e)) {
            bc_remove_tree(tmp);
            bc_err_untmp(e, tmp, dir);
            goto done;
        }
    }
    if (bc_fsync_tree(tmp, e) || bc_publish_dir(tmp, dir, NULL, e)) {
        bc_remove_tree(tmp);
        bc_err_untmp(e, tmp, dir);
        goto done;
    }
    *counts = (tk_demo_data_counts){split[0].n, split[1].n, split[2].n, NINTENT};
    rc = 0;
done:
    for (int i = 0; i < NINTENT; i++)
        free(by[i].s);
    for (int k = 0; k < 3; k++)
        free(split[k].s);
    return rc;
}
