"""parse() and parse_filter(): the grammar, literals, and syntax errors with positions."""

import pytest

from app.query import QueryError, QueryLimitError, QuerySyntaxError, parse, parse_filter
from app.query.nodes import (
    And,
    Between,
    Comparison,
    FieldEntry,
    InList,
    IsNull,
    Like,
    Literal,
    Location,
    Name,
    Not,
    Or,
    OrderKey,
    Path,
    Query,
    Selection,
    Wildcard,
)


def at(position, line=1, column=None):
    return Location(position, line, position + 1 if column is None else column)


def name(text, position):
    return Name(text, at(position))


class TestSelections:
    def test_fields_order_limit_offset(self):
        query = parse("users { id name ORDER BY name DESC NULLS LAST, id LIMIT 10 OFFSET 20 }")
        assert query == Query(root=Selection(
            name=name("users", 0), filter=None,
            entries=(FieldEntry(name("id", 8)), FieldEntry(name("name", 11))),
            order_by=(OrderKey(name("name", 25), descending=True, nulls="last"),
                      OrderKey(name("id", 47))),
            limit=10, limit_at=at(50), offset=20, offset_at=at(59)))

    def test_nested_with_filter_and_wildcards(self):
        query = parse('posts(id = 1) { * ... author { name } comments(approved = true) { body } }')
        root = query.root
        assert root.filter == Comparison(Path((name("id", 6),)), "=", Literal(1, at(11)))
        assert root.entries == (
            Wildcard(at(16), with_relations=False),
            Wildcard(at(18), with_relations=True),
            Selection(name=name("author", 22), filter=None,
                      entries=(FieldEntry(name("name", 31)),)),
            Selection(name=name("comments", 38),
                      filter=Comparison(Path((name("approved", 47),)), "=", Literal(True, at(58))),
                      entries=(FieldEntry(name("body", 66)),)),
        )

    def test_keywords_are_case_insensitive(self):
        for text in ("users { id order by id desc nulls first limit 1 offset 2 }",
                     "users { id Order\n  By id DeSc NuLLs FiRsT LiMiT 1 oFfSeT 2 }"):
            root = parse(text).root
            assert (root.order_by[0].name.text, root.order_by[0].descending,
                    root.order_by[0].nulls, root.limit, root.offset) == ("id", True, "first", 1, 2)

    def test_keyword_like_names_stay_names(self):
        root = parse("order(in = 1 AND limit = 2) { asc desc order limit offset not }").root
        assert root.name.text == "order"
        assert [entry.name.text for entry in root.entries] == [
            "asc", "desc", "order", "limit", "offset", "not"]
        assert root.limit is None and root.order_by == ()

    def test_backtick_names(self):
        root = parse("`my table` { `order` `a``b` }").root
        assert root.name.text == "my table"
        assert [entry.name.text for entry in root.entries] == ["order", "a`b"]

    def test_multiline_positions(self):
        root = parse("users {\n  id\n  posts { id }\n}").root
        assert root.entries[1].name == Name("posts", Location(15, 3, 3))


class TestFilters:
    def test_every_operator(self):
        expression = parse_filter(
            'a = 1 AND b != 2 AND c <> 3 AND d < 4 AND e <= 5 AND f > 6 AND g >= 7 '
            'AND h LIKE "x%" AND i NOT LIKE "y" AND j ILIKE "z" AND k NOT ILIKE "w" '
            'AND l IN (1, "two", true) AND m NOT IN (false) AND n IS NULL AND o IS NOT NULL '
            'AND p BETWEEN 1 AND 2 AND q NOT BETWEEN -1.5 AND 2e3')
        assert isinstance(expression, And)
        summary = []
        for node in expression.operands:
            kind = type(node).__name__
            if isinstance(node, Comparison):
                summary.append((kind, node.path.dotted, node.operator, node.value.value))
            elif isinstance(node, Like):
                summary.append((kind, node.path.dotted, node.negated, node.ignore_case,
                                node.pattern.value))
            elif isinstance(node, InList):
                summary.append((kind, node.path.dotted, node.negated,
                                [v.value for v in node.values]))
            elif isinstance(node, IsNull):
                summary.append((kind, node.path.dotted, node.negated))
            elif isinstance(node, Between):
                summary.append((kind, node.path.dotted, node.negated, node.low.value,
                                node.high.value))
        assert summary == [
            ("Comparison", "a", "=", 1), ("Comparison", "b", "!=", 2),
            ("Comparison", "c", "!=", 3), ("Comparison", "d", "<", 4),
            ("Comparison", "e", "<=", 5), ("Comparison", "f", ">", 6),
            ("Comparison", "g", ">=", 7),
            ("Like", "h", False, False, "x%"), ("Like", "i", True, False, "y"),
            ("Like", "j", False, True, "z"), ("Like", "k", True, True, "w"),
            ("InList", "l", False, [1, "two", True]), ("InList", "m", True, [False]),
            ("IsNull", "n", False), ("IsNull", "o", True),
            ("Between", "p", False, 1, 2), ("Between", "q", True, -1.5, 2000.0),
        ]

    def test_precedence_not_and_or(self):
        expression = parse_filter("NOT a = 1 OR b = 2 AND (c = 3 OR d = 4)")
        assert isinstance(expression, Or)
        left, right = expression.operands
        assert isinstance(left, Not) and isinstance(left.operand, Comparison)
        assert isinstance(right, And)
        assert isinstance(right.operands[1], Or)

    def test_keywords_case_insensitive_in_filters(self):
        assert parse_filter("a iS nOt NuLl oR b In (1) aNd c bEtWeEn 1 AnD 2") == parse_filter(
            "a IS NOT NULL OR b IN (1) AND c BETWEEN 1 AND 2")

    def test_dotted_path(self):
        expression = parse_filter("posts.comments.approved = true")
        assert expression.path.dotted == "posts.comments.approved"

    @pytest.mark.parametrize("text, value", [
        (r'"plain"', "plain"),
        (r'"say \"hi\""', 'say "hi"'),
        (r'"back\\slash"', "back\\slash"),
        (r'"tab\tnew\nline"', "tab\tnew\nline"),
        (r'"\u00e9t\u00E9"', "été"),
        (r'"\ud83d\ude00!"', "\U0001F600!"),  # a surrogate pair is one character, as in JSON
        (r'"100\%"', "100\\%"),  # unknown escapes stay as typed: LIKE's own escape
        ('"it\'s; DROP TABLE x; --"', "it's; DROP TABLE x; --"),
        ("0", 0), ("-17", -17), ("+3", 3), ("3.25", 3.25), ("-0.5", -0.5), ("1e3", 1000.0),
        ("true", True), ("FALSE", False),
    ])
    def test_literals(self, text, value):
        literal = parse_filter(f"x = {text}").value
        assert literal.value == value and type(literal.value) is type(value)


class TestSyntaxErrors:
    @pytest.mark.parametrize("text, position, line, column, message", [
        ("users { id = }", 11, 1, 12,
         "line 1, column 12: expected a field name, '*', '...', '(', '{', ORDER BY, LIMIT, "
         "OFFSET or '}' but found '='"),
        ("{ id }", 0, 1, 1, "line 1, column 1: expected a table name but found '{'"),
        ("users", 5, 1, 6, "line 1, column 6: expected '(' or '{' but found the end of the query"),
        ("users { }", 8, 1, 9,
         "line 1, column 9: expected a field name, '*' or '...' but found '}'"),
        ("users(x = ) { id }", 10, 1, 11,
         "line 1, column 11: expected a string, a number, true or false but found ')'"),
        ("users(x == 1) { id }", 9, 1, 10,
         "line 1, column 10: expected a string, a number, true or false but found '='"),
        ("users(x = 1 { id }", 12, 1, 13,
         "line 1, column 13: expected AND, OR or ')' but found '{'"),
        ("users(x IN (1 { id }", 14, 1, 15, "line 1, column 15: expected ',' or ')' but found '{'"),
        ("users { id } extra", 13, 1, 14,
         "line 1, column 14: expected the end of the query but found 'extra'"),
        ('users(x = "abc) { id }', 10, 1, 11,
         "line 1, column 11: unterminated string (a closing '\"' is missing)"),
        ("users { `id }", 8, 1, 9,
         "line 1, column 9: unterminated quoted name (a closing '`' is missing)"),
        ("users(a.) { id }", 8, 1, 9,
         "line 1, column 9: expected a field or relation name but found ')'"),
        ("users(x BETWEEN 1) { id }", 17, 1, 18, "line 1, column 18: expected AND but found ')'"),
        ("users(x IS 3) { id }", 11, 1, 12,
         "line 1, column 12: expected NOT or NULL but found '3'"),
        ("users { id ORDER BY }", 20, 1, 21,
         "line 1, column 21: expected a field name but found '}'"),
        ("users { id; DROP TABLE posts }", 10, 1, 11,
         "line 1, column 11: expected a field name, '*', '...', '(', '{', ORDER BY, LIMIT, "
         "OFFSET or '}' but found ';'"),
        ("users\n{ id\n  name( }", 19, 3, 9,
         "line 3, column 9: expected a field name, '(' or NOT but found '}'"),
        ("   ", 0, 1, 1, "line 1, column 1: the query is empty"),
    ])
    def test_position_and_message(self, text, position, line, column, message):
        with pytest.raises(QuerySyntaxError) as caught:
            parse(text)
        error = caught.value
        assert (error.position, error.line, error.column, str(error)) == (
            position, line, column, message)
        assert error.message == message

    @pytest.mark.parametrize("text", [r'"\ud83d"', r'"\ude00"', r'"\ud83dx"',
                                      r'"\ud83d\u0041"'])
    def test_lone_surrogates_are_refused(self, text):
        """Found by the HTTP fuzzer: no store or driver can bind them (was a 500)."""
        with pytest.raises(QuerySyntaxError) as caught:
            parse_filter(f"x = {text}")
        assert str(caught.value) == (
            "line 1, column 6: \\u escape of a lone surrogate: characters beyond U+FFFF are "
            "written as a pair (\\ud83d\\ude00)")

    @pytest.mark.parametrize("text, position, message", [
        ("users(x IN ()) { id }", 6, "line 1, column 7: IN needs at least one value for 'x'"),
        ("users(x = null) { id }", 10, "line 1, column 11: null cannot be compared with =, IN or "
                                       "BETWEEN; use IS NULL or IS NOT NULL"),
        ("users(x LIKE 5) { id }", 13, "line 1, column 14: LIKE needs a string pattern"),
        ("users { id LIMIT -1 }", 17,
         "line 1, column 18: LIMIT needs a whole number from 0 to 10000, not -1"),
        ("users { id OFFSET 1.5 }", 18,
         "line 1, column 19: OFFSET needs a whole number from 0 to 1000000, not 1.5"),
        ("users(x = " + "9" * 5000 + ") { id }", 10,
         "line 1, column 11: the number 999999999999999999999999999... is out of range"),
        ("users(x = 1e999) { id }", 10, "line 1, column 11: the number 1e999 is out of range"),
        ("users(x = 99999999999999999999) { id }", 10,
         "line 1, column 11: the number 99999999999999999999 is out of range"),
    ])
    def test_value_errors(self, text, position, message):
        with pytest.raises(QueryError) as caught:
            parse(text)
        assert (caught.value.position, str(caught.value)) == (position, message)

    def test_error_classes(self):
        assert issubclass(QuerySyntaxError, QueryError)
        with pytest.raises(QueryLimitError, match="bytes long"):
            parse("users { " + "id " * 40_000 + "}")
