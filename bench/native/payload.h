// The struct-heavy payload, the same values as bench/payloads.py builds for every Python system.
#pragma once
#include "handshake_types.h"

inline thrift_handshake::AllTypes bench_all_types() {
  using namespace thrift_handshake;
  AllTypes v;
  v.__set_id("bench");
  v.__set_flag(true);
  v.__set_small(7);
  v.__set_short_number(300);
  v.__set_number(70000);
  v.__set_big_number(int64_t(1) << 40);
  v.__set_real(3.25);
  v.__set_text(std::string(64, 't'));
  v.__set_data(std::string(32, 'd'));
  v.__set_color(Color::BLUE);
  Point origin;
  origin.__set_x(1);
  origin.__set_y(2);
  origin.__set_label("p");
  Shape shape;
  shape.__set_point(origin);
  v.__set_shape(shape);
  std::vector<int32_t> numbers;
  for (int i = 0; i < 100; i++) numbers.push_back(i);
  v.__set_numbers(numbers);
  std::set<std::string> tags;
  std::map<std::string, int64_t> counts;
  for (int i = 0; i < 10; i++) {
    tags.insert("tag" + std::to_string(i));
    counts["k" + std::to_string(i)] = i;
  }
  v.__set_tags(tags);
  v.__set_counts(counts);
  std::vector<Point> points;
  for (int i = 0; i < 3; i++) {
    Point p;
    p.__set_x(i);
    p.__set_y(i);
    points.push_back(p);
  }
  std::map<std::string, std::vector<Point>> groups;
  groups["a"] = points;
  groups["b"] = points;
  v.__set_groups(groups);
  std::map<std::string, std::set<int32_t>> layer;
  layer["x"] = {1, 2, 3};
  layer["y"] = {4, 5, 6};
  v.__set_layers({layer});
  std::map<int32_t, Color::type> palette;
  palette[1] = Color::RED;
  palette[2] = Color::GREEN;
  palette[3] = Color::BLUE;
  v.__set_palette(palette);
  v.__set_blobs({std::string(16, 'b'), std::string(16, 'b')});
  return v;
}
