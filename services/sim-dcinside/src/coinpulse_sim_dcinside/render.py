"""DCInside-shaped markup and JSON (structure as in shared/reference/dcinside.md)."""

from __future__ import annotations

import json
from datetime import datetime
from html import escape

from coinpulse_sim_dcinside.community import Comment, Community, Post

PREFIX = {"normal": "/board", "minor": "/mgallery/board", "mini": "/mini/board"}

ROBOTS = """# robots.txt for the coinpulse DCInside simulator (shape of gall.dcinside.com/robots.txt)
User-agent: GPTBot
Disallow: /
User-agent: CCBot
Disallow: /
User-agent: *
Allow: /
Disallow: /kcaptcha/image_v3/
Disallow: /board/lists/?id=forbidden_gall
Disallow: /board/view/?id=forbidden_gall
"""


def _writer(uid: str, nick: str, ip: str, loc: str) -> str:
    icon = ""
    if uid:
        icon = (f'<a class="writer_nikcon"><img src="https://nstatic.dcinside.com/dc/w/images/fix_nik.gif" '
                f'border="0" title="{escape(uid[:4])}** : 갤로그로 이동합니다." width="12" height="11"></a>')
    ip_span = f'<span class="ip">({escape(ip)})</span>' if ip else ""
    return (f'<td class="gall_writer ub-writer" data-nick="{escape(nick)}" data-uid="{escape(uid)}" '
            f'data-ip="{escape(ip)}" data-loc="{loc}"><span class="nickname in" title="{escape(nick)}">'
            f"<em>{escape(nick)}</em></span>{ip_span}{icon}</td>")


def _short_date(dt: datetime, now: datetime) -> str:
    return dt.strftime("%H:%M") if dt.date() == now.date() else dt.strftime("%y.%m.%d")


def list_page(site: Community, gallery: str, page: int, list_num: int) -> str:
    g = site.galleries[gallery]
    pre = PREFIX[g.kind]
    live = sorted(site.live_posts(gallery), key=lambda p: -p.no)
    chunk = live[(page - 1) * list_num: page * list_num]
    rows: list[str] = []
    if page == 1:
        for n in sorted((p for p in g.posts.values() if p.notice), key=lambda p: -p.no):
            rows.append(
                f'<tr class="ub-content" data-no="{n.no}" data-type="icon_notice"><td class="gall_num">공지</td>'
                f'<td class="gall_subject"><b>공지</b></td><td class="gall_tit ub-word">'
                f'<a href="{pre}/view/?id={gallery}&amp;no={n.no}&amp;page=1"><em class="icon_img icon_notice"></em>'
                f"<b>{escape(n.title)}</b></a></td>{_writer('', '운영자', '', 'list')}"
                f'<td class="gall_date" title="{n.created:%Y-%m-%d %H:%M:%S}">{n.created:%y.%m.%d}</td>'
                f'<td class="gall_count">-</td><td class="gall_recommend">-</td></tr>'
            )
        rows.append(
            '<tr class="ub-content" data-type="icon_survey"><td class="gall_num">설문</td><td class="gall_subject">설문</td>'
            '<td class="gall_tit ub-word"><a href="/survey/">코인 투자 성향 설문</a></td><td class="gall_writer">운영자</td>'
            '<td class="gall_date">-</td><td class="gall_count">-</td><td class="gall_recommend">-</td></tr>'
        )
    for i, p in enumerate(chunk):
        if i == 3:
            rows.append(
                '<tr class="ub-content" data-type="icon_ad"><td class="gall_num">AD</td><td class="gall_subject">AD</td>'
                '<td class="gall_tit ub-word"><a href="https://ad.example.com/">코인 자동매매 무료체험</a></td>'
                '<td class="gall_writer">광고</td><td class="gall_date"></td><td class="gall_count"></td>'
                '<td class="gall_recommend"></td></tr>'
            )
        icon = "icon_pic" if p.images else "icon_txt"
        rc = p.reply_count()
        reply = (f'<a class="reply_numbox" href="{pre}/view/?id={gallery}&amp;no={p.no}&amp;t=cv&amp;page={page}">'
                 f'<span class="reply_num">[{rc}]</span></a>') if rc else ""
        rows.append(
            f'<tr class="ub-content us-post" data-no="{p.no}" data-type="{icon}">'
            f'<td class="gall_num">{p.no}</td><td class="gall_subject"><p class="subject_inner">{escape(p.head)}</p></td>'
            f'<td class="gall_tit ub-word"><a href="{pre}/view/?id={gallery}&amp;no={p.no}&amp;page={page}" view-msg="">'
            f'<em class="icon_img {icon}"></em>{escape(p.title)}</a>{reply}</td>'
            f"{_writer(p.uid, p.nick, p.ip, 'list')}"
            f'<td class="gall_date" title="{p.created:%Y-%m-%d %H:%M:%S}">{_short_date(p.created, site.clock)}</td>'
            f'<td class="gall_count">{p.views}</td><td class="gall_recommend">{p.recommend}</td></tr>'
        )
    if not chunk:
        rows.append('<tr><td colspan="7" class="empty">등록된 게시물이 없습니다.</td></tr>')
    return (
        '<!DOCTYPE html><html lang="ko"><head><meta charset="UTF-8"><title>비트코인 갤러리 - 커뮤니티 포털 디시인사이드</title>'
        '<script>var _GALLERY_TYPE_ = "G";</script></head><body><div id="container"><section class="left_content">'
        f'<div class="page_head"><h2><a href="{pre}/lists/?id={gallery}">{escape(gallery)} 갤러리</a></h2></div>'
        '<div class="gall_listwrap list"><table class="gall_list"><caption>게시판 리스트</caption><thead><tr>'
        '<th>번호</th><th>말머리</th><th>제목</th><th>글쓴이</th><th>작성일</th><th>조회</th><th>추천</th></tr></thead>'
        f'<tbody class="listwrap2">{"".join(rows)}</tbody></table></div>'
        f'<div class="bottom_paging_box"><em>{page}</em><a href="{pre}/lists/?id={gallery}&amp;page={page + 1}">{page + 1}</a></div>'
        "</section></div></body></html>"
    )


def view_page(site: Community, gallery: str, p: Post) -> str:
    body = "".join(f"<p>{escape(t)}</p>" for t in p.paragraphs)
    imgs = "".join(f'<p><img src="{escape(u)}" alt="image" style="max-width:100%"></p>' for u in p.images)
    ad = '<div class="adv_area"><span>AD</span> 코인 자동매매 봇 무료 체험!</div>'
    script = "<script>window.dcAd && dcAd.push({slot: 'view_in'});</script>"
    return (
        '<!DOCTYPE html><html lang="ko"><head><meta charset="UTF-8"><title>' + escape(p.title) + "</title></head><body>"
        '<div id="container"><section><article><form id="_view_form_" name="frm">'
        f'<input type="hidden" id="id" name="id" value="{gallery}"><input type="hidden" id="no" name="no" value="{p.no}">'
        f'<input type="hidden" name="e_s_n_o" id="e_s_n_o" value="{site.token}"></form>'
        '<div class="view_content_wrap"><header><div class="gallview_head clear ub-content">'
        f'<h3 class="title ub-word"><span class="title_headtext">[{escape(p.head)}]</span> '
        f'<span class="title_subject">{escape(p.title)}</span></h3>'
        f'<div class="gall_writer ub-writer" data-nick="{escape(p.nick)}" data-uid="{escape(p.uid)}" data-ip="{escape(p.ip)}" data-loc="view">'
        f'<span class="nickname"><em>{escape(p.nick)}</em></span>'
        + (f'<span class="ip">({escape(p.ip)})</span>' if p.ip else "")
        + f'<span class="gall_date" title="{p.created:%Y-%m-%d %H:%M:%S}">{p.created:%Y.%m.%d %H:%M:%S}</span>'
        f'<span class="gall_count">조회 {p.views}</span><span class="gall_reply_num">댓글 {p.reply_count()}</span></div>'
        "</div></header>"
        f'<div class="gallview_contents"><div class="inner clear"><div class="writing_view_box"><div class="write_div" style="overflow:hidden;">'
        f"{script}{body}{ad}{imgs}<style>.write_div img{{max-width:100%}}</style></div></div></div>"
        f'<div class="btn_recommend_box"><p class="up_num font_red">{p.recommend}</p><p class="down_num">0</p></div>'
        "</div></div></article></section></div></body></html>"
    )


DELETED_PAGE = (
    '<!DOCTYPE html><html><head><meta charset="UTF-8"></head><body><script type="text/javascript">'
    "alert('해당 게시물은 삭제되었습니다.');location.replace('{back}');</script></body></html>"
)


def comment_reg_date(c: Comment, now: datetime) -> str:
    return c.created.strftime("%m.%d %H:%M:%S") if c.created.year == now.year else c.created.strftime("%y.%m.%d %H:%M:%S")


def _comment_json(c: Comment, now: datetime) -> dict:
    if c.kind == "dccon":
        memo = (f"<img class='written_dccon ' src='https://dcimg5.dcinside.com/dccon.php?no=62b5df2be09d3ca5' "
                f"conalt='{escape(c.text)}' alt='{escape(c.text)}' title='{escape(c.text)}' data-dcconoverstatus='false'>")
    elif c.kind == "voice":
        memo = ""
    elif c.deleted:
        memo = "삭제된 댓글입니다."
    else:
        memo = escape(c.text)
    gallog = f"<span class='nickname in' title='{escape(c.name)}'>{escape(c.name)}</span>"
    if c.ip:
        gallog = f'<span class="nickname">{escape(c.name)}<span class="ip">({escape(c.ip)}.*.*)</span></span>'
    return {
        "no": str(c.no), "headnum": str(-c.no), "parent": str(c.post_no), "ismember": "1" if c.uid else "0",
        "islevel": "9" if c.uid else "10", "user_id": c.uid, "name": c.name, "u_key": "",
        "ip": f"{c.ip}.*.*" if c.ip else "", "reg_date": comment_reg_date(c, now),
        "nicktype": "20" if c.uid else "00", "t_ch1": "", "t_ch2": "0", "recommend_cnt": 0, "nonrecommend_cnt": 0,
        "vr_type": "1" if c.kind == "voice" else "", "voice": f"https://vr.dcinside.com/{c.no}.m4a" if c.kind == "voice" else None,
        "rcnt": "0", "c_no": c.c_no, "depth": c.depth, "del_yn": "Y" if c.deleted else "N",
        "is_delete": "1" if c.deleted else "0", "memo": memo, "my_cmt": "N", "del_btn": "Y", "mod_btn": "N",
        "gallog_icon": gallog, "vr_player": c.kind == "voice", "vr_player_tag": "", "next_type": 0,
    }


def comment_json(site: Community, p: Post, page: int, per_page: int) -> str:
    ordered: list[Comment] = []
    roots = [c for c in p.comments if c.depth == 0]
    for r in sorted(roots, key=lambda c: c.no):
        ordered.append(r)
        ordered.extend(sorted((c for c in p.comments if c.depth and c.c_no == r.no), key=lambda c: c.no))
    pages = max(1, -(-len(ordered) // per_page))
    chunk = ordered[(page - 1) * per_page: page * per_page]
    paging = "".join(
        f"<em>{n}</em>" if n == page else f"<a href=\"javascript:viewComments({n},'D')\">{n}</a>" for n in range(1, pages + 1)
    )
    doc = {
        "total_cnt": str(len(ordered)) if p.no % 2 else len(ordered),  # the real site sends both
        "comment_cnt": p.reply_count(),
        "comments": [_comment_json(c, site.clock) for c in chunk] or None,
        "pagination": paging,
        "allow_reply": 1,
    }
    return json.dumps(doc, ensure_ascii=True)
